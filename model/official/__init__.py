"""The official Ca2-VDM network (causal STDiT2): exportable model, step graph, sampler, converter."""

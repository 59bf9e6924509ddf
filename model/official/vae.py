"""The VAE graphs beside the step graph, with the SD-VAE's interface as the official inference uses it:

    encoder.onnx: frames (N, 3, H, W) in [-1, 1]   -> latents (N, 4, H/8, W/8), already x scale
    decoder.onnx: latents (N, 4, H/8, W/8) (scaled) -> frames (N, 3, H, W), [-1, 1] (not clipped)

The official code scales SD-VAE latents by 0.18215 and samples the encoder's posterior; a serving
encoder returns its mean (one deterministic latent per starting image). `TinyVAE` is a random
stand-in with that interface, for tests and the committed demo model: it proves the path, not the picture.
"""
import onnx
import torch
import torch.nn as nn

ENCODER_IO = (["frames"], ["latents"])
DECODER_IO = (["latents"], ["frames"])


class TinyVAE(nn.Module):
    """Three stride-2 convolutions down to 4 channels at 1/8 size, three nearest-upsampled ones back."""
    def __init__(self, latent_channels=4, width=16, scale=0.18215):
        super().__init__()
        self.scale = scale
        w = width
        self.enc = nn.Sequential(nn.Conv2d(3, w, 3, 2, 1), nn.SiLU(), nn.Conv2d(w, w, 3, 2, 1), nn.SiLU(),
                                 nn.Conv2d(w, 2 * latent_channels, 3, 2, 1))   # mean and log-variance, as SD's
        self.dec = nn.Sequential(nn.Conv2d(latent_channels, w, 3, 1, 1), nn.SiLU(), nn.Upsample(scale_factor=2),
                                 nn.Conv2d(w, w, 3, 1, 1), nn.SiLU(), nn.Upsample(scale_factor=2),
                                 nn.Conv2d(w, w, 3, 1, 1), nn.SiLU(), nn.Upsample(scale_factor=2),
                                 nn.Conv2d(w, 3, 3, 1, 1), nn.Tanh())
        self.latent_channels = latent_channels

    def encode(self, frames):                              # (N, 3, H, W) -> (N, 4, H/8, W/8)
        return self.enc(frames)[:, :self.latent_channels] * self.scale

    def decode(self, latents):                             # (N, 4, h, w) -> (N, 3, 8h, 8w)
        return self.dec(latents / self.scale)


class _Encoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, frames):
        return self.vae.encode(frames)


class _Decoder(nn.Module):
    def __init__(self, vae):
        super().__init__()
        self.vae = vae

    def forward(self, latents):
        return self.vae.decode(latents)


def export_tiny(vae, frame_size, encoder_path, decoder_path):
    h, w = frame_size
    dyn = {0: "N"}
    torch.onnx.export(_Encoder(vae).eval(), (torch.zeros(1, 3, h, w),), encoder_path, input_names=ENCODER_IO[0],
                      output_names=ENCODER_IO[1], opset_version=17, dynamic_axes={"frames": dyn, "latents": dyn})
    torch.onnx.export(_Decoder(vae).eval(), (torch.zeros(1, vae.latent_channels, h // 8, w // 8),), decoder_path,
                      input_names=DECODER_IO[0], output_names=DECODER_IO[1], opset_version=17,
                      dynamic_axes={"latents": dyn, "frames": dyn})


def check_graph(path, io, want_in, want_out):
    """A VAE graph given to the converter must have the named input/output with these static C, H, W."""
    g = onnx.load(path, load_external_data=False).graph

    def dims(v):
        return [d.dim_value if d.HasField("dim_value") else None for d in v.type.tensor_type.shape.dim]
    ins, outs = {i.name: dims(i) for i in g.input}, {o.name: dims(o) for o in g.output}
    for names, have, want in ((io[0], ins, want_in), (io[1], outs, want_out)):
        name = names[0]
        if name not in have:
            raise ValueError(f"{path}: no graph input/output named '{name}' (has {sorted(have)})")
        if len(have[name]) != 4 or [d for d in have[name][1:]] != list(want):
            raise ValueError(f"{path}: '{name}' has shape {have[name]}, the model needs (N, {', '.join(map(str, want))})")

import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { CACHE_SEGMENT_TAGS } from '../../shared/keys.js';
import { acknowledge } from '../nag.js';

export interface StorageProps {
  /** Days after which tagged cache segments are deleted. @default 7 */
  readonly keepCacheDays?: number;
  /** @default RemovalPolicy.RETAIN: job outputs outlive the stack unless the operator empties the bucket */
  readonly removalPolicy?: RemovalPolicy;
}

/** Key prefixes (patterns below the bucket) a principal may read, write or list. */
export interface PrefixGrant {
  /** s3:GetObject (GET and HEAD) on these patterns, e.g. `jobs/*`. */
  readonly read?: readonly string[];
  /** s3:PutObject (and PutObjectTagging: a PUT with a Tagging header needs it) on these patterns. */
  readonly write?: readonly string[];
  /** s3:DeleteObject on these patterns. */
  readonly delete?: readonly string[];
}

/** The one private bucket of the storage layout (`jobs/`, `index/`, `auth/keys/`, `tenants/`). */
export class Storage extends Construct {
  public readonly bucket: s3.Bucket;

  constructor(scope: Construct, id: string, props: StorageProps = {}) {
    super(scope, id);
    const keepCacheDays = props.keepCacheDays ?? 7;
    if (!Number.isInteger(keepCacheDays) || keepCacheDays < 1) throw new Error(`keepCacheDays must be a positive integer, got ${keepCacheDays}`);

    this.bucket = new s3.Bucket(this, 'Bucket', {
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      encryption: s3.BucketEncryption.S3_MANAGED,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      // No versioning: job.json is rewritten by compare-and-swap on every chunk, versions would only add cost.
      versioned: false,
      removalPolicy: props.removalPolicy ?? RemovalPolicy.RETAIN,
      lifecycleRules: [
        {
          // S3 lifecycle cannot match `jobs/*/*/cache/`, so the worker tags expiring segments instead.
          id: 'expire-cache-segments',
          // The worker tags every cache segment it writes with these (gpu-worker/chunk-step.ts).
          tagFilters: { ...CACHE_SEGMENT_TAGS },
          expiration: Duration.days(keepCacheDays),
        },
        { id: 'abort-incomplete-multipart', abortIncompleteMultipartUploadAfter: Duration.days(1) },
        // Starting frames sent before their job (POST /v1/uploads): a job copies what it uses.
        { id: 'expire-uploads', prefix: 'uploads/', expiration: Duration.days(1) },
      ],
      // The web page plays the HLS stream with hls.js, which fetches the presigned segment links from
      // the API's origin: GET (and HEAD) from any origin. A presigned URL is itself the credential.
      cors: [{ allowedMethods: [s3.HttpMethods.GET, s3.HttpMethods.HEAD], allowedOrigins: ['*'], maxAge: 3600 }],
    });
    acknowledge(this.bucket, [
      { id: 'AwsSolutions-S1', reason: 'Access logs need a second bucket; the API and CloudTrail data events already record who touched which job.' },
    ]);
  }

  /**
   * Grants object access on key patterns only. s3:ListBucket is on the bucket itself, unconditioned:
   * S3 answers a GET of a missing key with 404 only to callers that may list (else 403), and the
   * store reads "missing" as null; a prefix condition would not apply to GetObject, so it cannot be scoped.
   */
  public grantPrefixes(grantee: iam.IGrantable, access: PrefixGrant): void {
    const objects = (patterns: readonly string[]) => patterns.map((p) => this.bucket.arnForObjects(p));
    const statements: iam.PolicyStatement[] = [
      new iam.PolicyStatement({ actions: ['s3:ListBucket'], resources: [this.bucket.bucketArn] }),
    ];
    if (access.read?.length) statements.push(new iam.PolicyStatement({ actions: ['s3:GetObject'], resources: objects(access.read) }));
    if (access.write?.length) {
      statements.push(new iam.PolicyStatement({ actions: ['s3:PutObject', 's3:PutObjectTagging'], resources: objects(access.write) }));
    }
    if (access.delete?.length) statements.push(new iam.PolicyStatement({ actions: ['s3:DeleteObject'], resources: objects(access.delete) }));
    for (const statement of statements) grantee.grantPrincipal.addToPrincipalPolicy(statement);
  }
}

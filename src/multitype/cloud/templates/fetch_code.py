# The code/ of an S3 root into a folder; run by the user-data scripts (ec2_user_data.sh, serve_user_data.sh)
# as "$PY" - ROOT DEST inside a quoted here-document. boto3 only: multitype itself is not there yet.
import os, sys
import boto3
root, dest = sys.argv[1], os.path.realpath(sys.argv[2])
bucket, _, prefix = root[len("s3://"):].partition("/")
prefix = f"{prefix.strip('/')}/code/".lstrip("/")
s3 = boto3.client("s3")
count = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
    for item in page.get("Contents", []):
        rel = item["Key"][len(prefix):]
        if rel.startswith("sagemaker/") or rel.endswith("/"):
            continue
        target = os.path.realpath(os.path.join(dest, rel))
        if not rel or os.path.isabs(rel) or not target.startswith(dest + os.sep):
            sys.exit(f"error: refusing key s3://{bucket}/{item['Key']}: it points outside {dest}")
        os.makedirs(os.path.dirname(target), exist_ok=True)
        s3.download_file(bucket, item["Key"], target + ".part")
        os.replace(target + ".part", target)
        count += 1
if not os.path.isdir(os.path.join(dest, "src", "multitype")):
    sys.exit(f"error: {root}/code/src/multitype not found; run 'multitype sync push --only code' first")
print(f"code: {count} file(s) from {root}/code/ into {dest}")

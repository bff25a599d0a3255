"""Test-wide hygiene: never reach the internet, never probe the ECS metadata address."""

import os

for _name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"):
    os.environ.pop(_name, None)
os.environ["ALIBABA_CLOUD_ECS_METADATA_DISABLED"] = "true"

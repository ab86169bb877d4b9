"""The reduced full pipeline of the e2e test, as a subprocess for fault tests.

python -m tests.hardening.full_pipeline TMP_DIR     (images under TMP_DIR/images)
"""

import sys
from pathlib import Path

from backbone_regularizer.pipeline.local_runner import run_local
from tests.pipeline.test_pipeline_e2e import reduced_config

if __name__ == "__main__":
    run_local(reduced_config(Path(sys.argv[1])))

#!/usr/bin/env bash
# GPU check of the job's tagging code (see scripts/gpu_check.py): prints a README-ready markdown
# table on stdout, progress on stderr. Needs only Python with torch, transformers, numpy and pandas
# (no Java, no pyspark, nothing installed). On a GPU it finishes within 8 minutes; on a CPU it runs
# small and says so.
#   scripts/gpu_check.sh [--items N] [--batch-sizes 16,64,256] [--device cuda:0] [--budget-s 390]
set -euo pipefail
cd "$(dirname "$0")/.."
exec timeout 480 "${PYTHON:-python3}" scripts/gpu_check.py "$@"

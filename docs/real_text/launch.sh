#!/bin/sh
# launch.sh NAME MINUTES [args...]: one probe in the background, niced, one thread
name=$1; shift; minutes=$1; shift
cd "$(dirname "$0")/.." && mkdir -p docs/real_text/logs
NUMBA_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 PYTHONPATH=. nohup nice -n 10 \
  python docs/real_text/text_probe.py "$name" --minutes "$minutes" "$@" > "docs/real_text/logs/$name.log" 2>&1 &
echo "$name pid $!"

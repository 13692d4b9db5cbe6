#!/bin/bash
# usage: run_all.sh /work/main|/work/wt-review
tree=$1
for f in bug_fuse bug_collate bug_stack_valid bug_tissue bug_crop_fov bug_merge_valid_name bug_cloud_group sus_flip sus_valid_name; do
  echo "== $f"; (cd $tree && PYTHONPATH=$tree:/work/wt-review/review_scripts timeout 300 nice /work/main/.venv/bin/python /work/wt-review/review_scripts/$f.py 2>&1 | tail -8)
done

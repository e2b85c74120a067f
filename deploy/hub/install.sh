#!/usr/bin/env bash
# The course hub on a fresh Debian 12/13 or Ubuntu 24.04 machine, in one command (as root):
#
#   sudo deploy/hub/install.sh INSTRUCTOR [LEARNER ...]
#
# run from a checkout of the course at its final place (e.g. /opt/dl-course). It installs the system
# packages, the course's pinned environment (.venv, shared by everyone), the hub's proxy, the accounts'
# groups, the course folder and the protected exchange, and starts two systemd units: the hub and
# `course serve`. Idempotent: run it again to add learners or after `git pull`.
# Settings (environment): COURSE_EXCHANGE, COURSE_DIR, COURSE_LEARNERS, COURSE_INSTRUCTORS, HUB_BIND_URL,
# COURSE_INTERVAL (seconds between two graded submissions of one learner and chapter, default 600).
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root: sudo $0 $*"; exit 1; }
[ $# -ge 1 ] || { echo "usage: $0 INSTRUCTOR [LEARNER ...]"; exit 1; }
INSTRUCTOR=$1; shift
REPO=$(cd "$(dirname "$0")/../.." && pwd)
HUB=$REPO/deploy/hub
EXCHANGE=${COURSE_EXCHANGE:-/srv/nbgrader/exchange}
COURSE=${COURSE_DIR:-/srv/dl-course/course}
LEARNERS=${COURSE_LEARNERS:-dl-learners}
INSTRUCTORS=${COURSE_INSTRUCTORS:-dl-instructors}
BIND=${HUB_BIND_URL:-http://:8000}
INTERVAL=${COURSE_INTERVAL:-600}

echo "== system packages"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
packages="python3 python3-venv make git util-linux passwd"
# Node.js and npm from Debian/Ubuntu, unless a Node.js with its own npm is already there (NodeSource's
# nodejs package ships npm and conflicts with Debian's npm package)
command -v npm > /dev/null || packages="$packages nodejs npm"
apt-get install -y -q $packages

echo "== the course's pinned environment ($REPO/.venv), shared by every account"
make -C "$REPO" env EXCHANGE="$EXCHANGE"
"$REPO/.venv/bin/pip" install --quiet --disable-pip-version-check --root-user-action=ignore \
    -c "$REPO/requirements.lock" -e "$REPO[hub]"
npm ci --prefix "$HUB" --no-audit --no-fund --omit=dev

echo "== accounts: $INSTRUCTORS ($INSTRUCTOR), $LEARNERS ($*)"
getent group "$LEARNERS" > /dev/null || groupadd "$LEARNERS"
getent group "$INSTRUCTORS" > /dev/null || groupadd "$INSTRUCTORS"
id "$INSTRUCTOR" > /dev/null 2>&1 || useradd --create-home --user-group --shell /bin/bash "$INSTRUCTOR"
usermod -aG "$INSTRUCTORS" "$INSTRUCTOR"
for learner in "$@"; do
    # --user-group: each learner's private group is what guards their work in the exchange
    id "$learner" > /dev/null 2>&1 || useradd --create-home --user-group --shell /bin/bash "$learner"
    usermod -aG "$LEARNERS" "$learner"
    chmod 0700 "$(getent passwd "$learner" | cut -d: -f6)"
done
echo "   set passwords with: passwd NAME (PAM checks them at the hub's login)"

echo "== who may read what in the checkout: learners must not read the worked solutions or the references"
chown -R root:"$INSTRUCTORS" "$REPO/solutions" "$REPO/grader/judge/references"
chmod -R o-rwx "$REPO/solutions" "$REPO/grader/judge/references"
chmod -R g+rwX "$REPO/solutions" "$REPO/grader/judge/references"   # course release writes given code there

echo "== the course folder ($COURSE) and the protected exchange ($EXCHANGE)"
mkdir -p "$COURSE"
"$REPO/.venv/bin/course" --course "$COURSE" init --exchange "$EXCHANGE"
"$REPO/.venv/bin/python" - "$EXCHANGE" "$INSTRUCTOR" "$@" <<'PY'
import sys
from grader.workflow import exchange
from grader.workflow.course import COURSE_ID
root, owner, *learners = sys.argv[1:]
print(exchange.prepare_exchange(root, COURSE_ID, owner))
for learner in learners:
    print(exchange.enroll(root, COURSE_ID, learner, owner))
PY
chown -R "$INSTRUCTOR": "$(dirname "$COURSE")"
# Every nbgrader on this machine (the instructor's over ssh too) uses the protected exchange.
mkdir -p /etc/jupyter
cat > /etc/jupyter/nbgrader_config.py <<PY
# Written by $HUB/install.sh: the course's protected exchange for every nbgrader on this machine.
import os
os.environ.setdefault("COURSE_EXCHANGE", "$EXCHANGE")
load_subconfig("$HUB/jupyter-learner/nbgrader_config.py")  # noqa: F821
PY

echo "== systemd units"
mkdir -p /etc/dl-course
cat > /etc/dl-course/hub.env <<ENV
COURSE_EXCHANGE=$EXCHANGE
COURSE_DIR=$COURSE
COURSE_LEARNERS=$LEARNERS
COURSE_INSTRUCTORS=$INSTRUCTORS
HUB_BIND_URL=$BIND
COURSE_INTERVAL=$INTERVAL
OMP_NUM_THREADS=1
ENV
for unit in dl-course-hub.service dl-course-serve.service; do
    sed "s|@REPO@|$REPO|g" "$HUB/$unit" > "/etc/systemd/system/$unit"
done
systemctl daemon-reload
systemctl enable --now dl-course-hub.service dl-course-serve.service
echo
echo "The hub listens on $BIND. Next, as $INSTRUCTOR: course --course $COURSE release 01_mlp_xor"
echo "Check: systemctl status dl-course-hub dl-course-serve; journalctl -u dl-course-serve -f"

#!/usr/bin/env bash
# deploy/hub/install.sh end to end on a machine without systemd (a container, a CI machine), as root:
#
#   sudo deploy/hub/trial/run.sh            # after `make test` once (it uses the checkout's test helpers)
#
# A fresh clone of this checkout goes to /opt/dl-course-trial; install.sh runs there as the README says,
# with its settings pointed at /srv/trial and port 8765; a systemctl stand-in records what it would start,
# and flow.py starts the two units' ExecStart lines itself. Then the README's instructor step (release
# chapter 01 from the instructor's login shell) and two learners through the hub: one hands in the
# worked answers, one the chapter untouched; both fetch their feedback. Everything is removed at the end
# (accounts, units, /etc/jupyter/nbgrader_config.py, folders) unless KEEP_TRIAL=1.
set -euo pipefail
[ "$(id -u)" = 0 ] || { echo "run as root: sudo $0"; exit 1; }
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../../.." && pwd)
TRIAL=/opt/dl-course-trial
WORK=$(mktemp -d /tmp/dl-hub-trial-XXXXXX)
[ -x "$REPO/.venv/bin/pytest" ] || { echo "run make test once first (the trial uses its helpers)"; exit 1; }

cleanup() {
    for u in tralice trbob trteacher; do pkill -KILL -u "$u" 2>/dev/null || true; userdel --remove "$u" 2>/dev/null || true; done
    for g in trlearners trinstructors; do groupdel "$g" 2>/dev/null || true; done
    rm -f /etc/systemd/system/dl-course-hub.service /etc/systemd/system/dl-course-serve.service
    rm -rf /etc/dl-course /srv/trial /var/lib/dl-course-hub "$TRIAL"
    rm -f /etc/jupyter/nbgrader_config.py
    if [ -e "$WORK/nbgrader_config.py.saved" ]; then cp "$WORK/nbgrader_config.py.saved" /etc/jupyter/nbgrader_config.py; fi
    rmdir /etc/jupyter 2>/dev/null || true
}
[ -n "${KEEP_TRIAL:-}" ] || trap cleanup EXIT
[ ! -e "$TRIAL" ] || { echo "$TRIAL exists: remove it first"; exit 1; }
[ ! -e /etc/jupyter/nbgrader_config.py ] || cp /etc/jupyter/nbgrader_config.py "$WORK/nbgrader_config.py.saved"

git clone -q "$REPO" "$TRIAL"
mkdir -p "$WORK/shim"
printf '#!/bin/sh\necho "systemctl $*" >> %s/systemctl.log\n' "$WORK" > "$WORK/shim/systemctl"
chmod +x "$WORK/shim/systemctl"
start=$(date +%s)
# sudo's PATH, not the caller's (no pyenv, no other venv): the Python 3 the distribution ships
env -i HOME=/root LANG=C.UTF-8 PATH="$WORK/shim:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
    COURSE_EXCHANGE=/srv/trial/exchange COURSE_DIR=/srv/trial/dl-course/course \
    COURSE_LEARNERS=trlearners COURSE_INSTRUCTORS=trinstructors HUB_BIND_URL=http://127.0.0.1:8765 \
    bash "$TRIAL/deploy/hub/install.sh" trteacher tralice trbob > "$WORK/install.log" 2>&1 \
    || { tail -40 "$WORK/install.log"; echo "install.sh failed (log: $WORK/install.log)"; exit 1; }
echo "install.sh: $(( $(date +%s) - start )) s (log: $WORK/install.log)"
sed 's/^/  /' "$WORK/systemctl.log"
"$REPO/.venv/bin/python" "$HERE/flow.py" "$TRIAL" "$WORK"

#!/bin/sh
# The `wrapped` image's ENTRYPOINT. This script is PID 1 of its container and the real program is
# its child, as in many images built around a wrapper script. A shell that is PID 1 has no default
# action for SIGTERM (the kernel drops signals PID 1 has no handler for), so the script traps
# SIGTERM and forwards it; `kill -TERM $(pidof entrypoint.sh)` therefore stops the container.
child=
forwarded=
forward() {
  echo "entrypoint.sh: SIGTERM, forwarding to $child" >&2
  forwarded=1
  [ -n "$child" ] && kill -TERM "$child" 2>/dev/null
}
trap forward TERM INT
sidecar "$@" &
child=$!
echo "entrypoint.sh: started sidecar as $child" >&2
wait "$child"
status=$?
# A trapped signal interrupts `wait` (status 128+n): wait again for the child's own exit status.
while [ -n "$forwarded" ]; do
  forwarded=
  wait "$child"
  status=$?
done
exit "$status"

#!/bin/sh
# Hearth's .deb postinst and .rpm %post (packaging/README.md). Installing
# starts nothing, and nothing of Hearth ever runs as root: each user's tray
# starts at their next login (/etc/xdg/autostart/hearth-tray.desktop).
# On an upgrade (deb: "configure" with the old version; rpm: $1 = 2),
# each logged-in user whose hearth.service user unit is running has it
# restarted on the new binary by their own systemd --user manager, run as
# that user with runuser: that works with every systemd version, where
# "systemctl --user -M user@" needs systemd 248 or later.
case "$1" in
configure) [ -n "$2" ] || exit 0 ;;
2) ;;
*) exit 0 ;;
esac
for dir in /run/user/*; do
	[ -S "$dir/bus" ] || continue
	user=$(getent passwd "${dir##*/}" | cut -d: -f1)
	[ -n "$user" ] || continue
	runuser -u "$user" -- env XDG_RUNTIME_DIR="$dir" DBUS_SESSION_BUS_ADDRESS="unix:path=$dir/bus" \
		sh -c 'systemctl --user is-active --quiet hearth.service || exit 0
systemctl --user daemon-reload && systemctl --user restart hearth.service && echo "hearth: restarted $USER'"'"'s Hearth"' || true
done
exit 0

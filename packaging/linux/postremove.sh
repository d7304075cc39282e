#!/bin/sh
# Hearth's .deb postrm and .rpm %postun (packaging/README.md). Each user's
# data (accounts, rooms, keys) lives in their home and is never deleted
# here, not even by a purge: on purge (deb) or erase (rpm: $1 = 0) this
# says where it is. A Hearth or tray still running keeps running until it
# exits.
case "$1" in
purge | 0) ;;
*) exit 0 ;;
esac
echo "Hearth is removed. Each user's Hearth data is kept, in ~/.local/share/hearth"
echo "(or \$XDG_DATA_HOME/hearth); delete it yourself if it is no longer needed:"
getent passwd | while IFS=: read -r name _ _ _ _ home _; do
	if [ -d "$home/.local/share/hearth" ]; then echo "  $name: $home/.local/share/hearth"; fi
done
exit 0

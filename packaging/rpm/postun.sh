# hsm-agent %postun ($1: 0 = erased, 1+ = upgraded): reload systemd; after an
# upgrade restart the daemon if it was running. Erase removes the credentials
# compatibility drop-in %post may have written, and keeps /var/lib/hsm-agent
# and a modified /etc/hsm-agent/config.yml (as .rpmsave), as rpm does.
if [ "$1" -eq 0 ]; then
	rm -f /etc/systemd/system/hsm-agent.service.d/50-credentials-compat.conf
	rmdir /etc/systemd/system/hsm-agent.service.d 2>/dev/null || :
fi
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || :
	if [ "$1" -ge 1 ]; then
		systemctl try-restart hsm-agent.service || :
	fi
fi
exit 0

# hsm-agent %postun ($1: 0 = erased, 1+ = upgraded): reload systemd; after an
# upgrade restart the daemon if it was running. Erase keeps /var/lib/hsm-agent
# and a modified /etc/hsm-agent/config.yml (as .rpmsave), as rpm does.
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || :
	if [ "$1" -ge 1 ]; then
		systemctl try-restart hsm-agent.service || :
	fi
fi
exit 0

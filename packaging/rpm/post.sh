# hsm-agent %post ($1: 1 = first install, 2+ = upgrade): enable, never start,
# on first install (the configuration must list the site's HSMs first).
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || :
fi
if [ "$1" -eq 1 ]; then
	systemctl enable hsm-agent.service || echo "hsm-agent: could not enable hsm-agent.service; run: systemctl enable hsm-agent.service" >&2
	echo "hsm-agent: edit /etc/hsm-agent/config.yml, then: systemctl start hsm-agent.service"
fi
exit 0

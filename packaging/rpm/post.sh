# hsm-agent %post ($1: 1 = first install, 2+ = upgrade): enable, never start,
# on first install (the configuration must list the site's HSMs first).
# systemd < 251 cannot load a directory with LoadCredential= and would refuse
# to start the service: turn it off there (secrets then come from *_file paths).
compat=/etc/systemd/system/hsm-agent.service.d/50-credentials-compat.conf
sdver=$(systemctl --version 2>/dev/null | awk 'NR == 1 { print $2 }')
case "$sdver" in
'' | *[!0-9]*) ;;
*)
	if [ "$sdver" -lt 251 ] && [ ! -e "$compat" ]; then
		mkdir -p /etc/systemd/system/hsm-agent.service.d
		cp /usr/share/hsm-agent/50-credentials-compat.conf "$compat"
	fi
	;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || :
fi
if [ "$1" -eq 1 ]; then
	systemctl enable hsm-agent.service || echo "hsm-agent: could not enable hsm-agent.service; run: systemctl enable hsm-agent.service" >&2
	echo "hsm-agent: edit /etc/hsm-agent/config.yml, then: systemctl start hsm-agent.service"
fi
exit 0

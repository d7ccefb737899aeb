# hsm-agent %preun ($1: 0 = erase, 1+ = upgrade): stop and disable on erase
# only; an upgrade leaves the daemon running (%postun try-restarts it).
if [ "$1" -eq 0 ]; then
	if [ -d /run/systemd/system ]; then
		systemctl stop hsm-agent.service || :
	fi
	systemctl disable hsm-agent.service || :
fi
exit 0

# hsm-agent %pre: create the system user before the files are unpacked, so
# that rpm gives it /etc/hsm-agent/credentials and /var/lib/hsm-agent.
if ! getent passwd hsm-agent >/dev/null; then
	if command -v systemd-sysusers >/dev/null 2>&1; then
		printf '%s\n' '@SYSUSERS_LINE@' |
			systemd-sysusers --replace=/usr/lib/sysusers.d/hsm-agent.conf -
	else
		getent group hsm-agent >/dev/null || groupadd -r hsm-agent
		useradd -r -g hsm-agent -d /var/lib/hsm-agent -M -s /usr/sbin/nologin \
			-c "HSM health agent" hsm-agent
	fi
fi
exit 0

echo hello > /etc/provisioned
dpkg -l | wc -l

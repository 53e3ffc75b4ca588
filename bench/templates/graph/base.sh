echo base > /etc/bench-layer
dpkg -l | wc -l

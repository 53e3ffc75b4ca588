mkdir -p /opt/app
head -c 10485760 /dev/urandom > /opt/app/data.bin
echo app > /etc/bench-layer

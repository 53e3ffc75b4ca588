echo "release $RELEASE" > /etc/bench-release
echo product > /etc/bench-layer

#!/bin/sh
# Run by the imported template's second step: RELEASE and API_TOKEN come from environment_vars.
set -e
echo "release $RELEASE" > /etc/shop/release
test -n "$API_TOKEN"

#!/bin/sh
# Runs in the guest as root with /bin/sh -e; GREETING comes from the template's env.
mkdir -p /etc/kiln
printf '%s from the app layer\n' "$GREETING" > /etc/kiln/greeting

#!/bin/sh
# mmdebstrap --customize-hook (run with the root filesystem's path as $1, after the packages are
# installed): removes what SOURCE_DATE_EPOCH does not make reproducible, so that the base rootfs
# tarball depends only on the recipe's base fields and the mirror's content, never on the run or
# the build host. mmdebstrap's own cleanup (with SOURCE_DATE_EPOCH) already drops the dpkg/apt logs,
# ldconfig's aux-cache and the machine ids.
set -eu
root=$1

# openssh-server's postinst generates new host keys on every run; an image must not carry any
# (no two instances may share them): cloud-init's ssh module makes the guest's own at first boot.
rm -f "$root"/etc/ssh/ssh_host_*_key "$root"/etc/ssh/ssh_host_*_key.pub

# mmdebstrap copies these two from the build host (debootstrap compatibility). assemble writes the
# image's /etc/hostname; resolv.conf is kept only where a package made it (systemd-resolved's link).
rm -f "$root/etc/hostname"
if [ ! -L "$root/etc/resolv.conf" ]; then rm -f "$root/etc/resolv.conf"; fi

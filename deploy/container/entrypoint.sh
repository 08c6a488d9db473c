#!/bin/sh
# The image's entrypoint, as TorchServe's images have one:
#   serve [flags]            tsserve with the image's config.properties (CMD's default)
#   torchserve|tsserve ...   the server as asked; KServe's runtime passes `torchserve --start ...`
#   anything else            run as it is (sh, tsserve-archiver, torch-model-archiver, ...)
# The image sets TSSERVE_FOREGROUND=true, so `--start` serves in the foreground, and exec makes
# the server the container's main process: SIGTERM reaches it, it drains, and exits 0.
set -e
if [ "$1" = serve ]; then
  shift
  set -- tsserve --start --ts-config /home/model-server/config.properties "$@"
fi
exec "$@"

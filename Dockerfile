# tsserve's image: the server, its CLIs and the MNIST example archive, on the official Node.js
# image. Runs as KServe's stock TorchServe runtime runs TorchServe's image (docs/deploy.md):
#   podman build -t tsserve .
#   podman run --rm -p 8080:8080 tsserve serve --models mnist=mnist.mar --disable-token-auth
# BASE_IMAGE: an image with node and npm in /usr/local and a user `node` of uid 1000, as the
# official node:*-bookworm-slim images are (deploy/podman/make-base-image.sh makes a stand-in).
ARG BASE_IMAGE=node:24-bookworm-slim

FROM ${BASE_IMAGE} AS build
WORKDIR /build
# onnxruntime-node's install step fetches GPU binaries from outside the npm registry; its CPU
# binaries ship in the package. --ignore-scripts skips it, and the build below is run by hand.
ENV ONNXRUNTIME_NODE_INSTALL=skip
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY bin bin
COPY src src
COPY handlers handlers
COPY examples/mnist examples/mnist
RUN npm run build \
 && node bin/tsserve-archiver.js --model-name mnist --version 1.0 --serialized-file examples/mnist/mnist.onnx \
      --handler examples/mnist/mnist_handler.ts --config-file examples/mnist/model-config.yaml \
      --extra-files examples/mnist/digits/7_0.png \
      --export-path /build/model-store --force \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund \
 && platform="linux/$(node -p 'process.arch')" \
 && find node_modules/onnxruntime-node/bin -mindepth 3 -maxdepth 3 -type d ! -path "*/$platform" -exec rm -rf {} + \
 && rm -rf node_modules/.cache

FROM ${BASE_IMAGE}
ENV NODE_ENV=production \
    TSSERVE_FOREGROUND=true
WORKDIR /opt/tsserve
COPY --from=build /build/package.json ./
COPY --from=build /build/node_modules node_modules
COPY --from=build /build/dist dist
COPY --from=build /build/bin bin
COPY src/grpc/proto src/grpc/proto
COPY src/convert/export_onnx.py src/convert/export_onnx.py
COPY web web
COPY deploy/container/entrypoint.sh /usr/local/bin/tsserve-entrypoint
# tini as PID 1 (Debian's, 1 MB): a SIGTERM that comes before Node.js has run any of tsserve's code
# (its first ~20 ms) then ends the server at once instead of being ignored, as PID 1 ignores a
# signal it has no handler for, until the grace period's SIGKILL; such an end (143) is a stop
# asked for, so it exits 0 (-e 143). tini also reaps what a handler's processes leave behind.
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends tini >/dev/null \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
RUN for cli in tsserve tsserve-archiver tsserve-app tsserve-convert; do ln -s /opt/tsserve/bin/$cli.js /usr/local/bin/$cli; done \
 && ln -s /opt/tsserve/bin/tsserve.js /usr/local/bin/torchserve \
 && ln -s /opt/tsserve/bin/tsserve-archiver.js /usr/local/bin/torch-model-archiver \
 && mkdir -p /home/model-server/model-store /home/model-server/logs \
 && chown -R 1000:1000 /home/model-server
COPY --chown=1000:1000 deploy/container/config.properties /home/model-server/config.properties
COPY --from=build --chown=1000:1000 /build/model-store /home/model-server/model-store
USER 1000
WORKDIR /home/model-server
# Inference, management, metrics; gRPC inference and management; KServe's HTTP and gRPC when
# the runtime turns them on (8080 and 8081 then, with inference on 8085).
EXPOSE 8080 8081 8082 7070 7071 8085
ENTRYPOINT ["/usr/bin/tini", "-e", "143", "--", "/usr/local/bin/tsserve-entrypoint"]
CMD ["serve"]

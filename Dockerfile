# The emulator image: one image, two services (`emulator serve --role databricks|azureml`).
#
# Online (a registry and PyPI are reachable):   docker compose build
# Offline (no registry, no PyPI in containers):  emulator images build --offline
#   which passes BASE_IMAGE=<a debootstrap-made Debian image> and WHEELHOUSE=<wheels built on the host>.
# Works with the classic builder too (Debian's docker.io has no buildx): no RUN --mount.
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS build
# Empty: install from PyPI. Else a directory of wheels in the build context: install with --no-index.
ARG WHEELHOUSE=
# Lets the offline builder prune this stage's untagged image afterwards (it is ~1 GB).
LABEL org.mlflow-azure-emulator.stage=build
COPY . /src
RUN set -eu; \
    python3 -m venv /opt/emulator; \
    if [ -n "$WHEELHOUSE" ]; then \
        /opt/emulator/bin/pip install --no-cache-dir --disable-pip-version-check \
            --no-index --find-links "/src/$WHEELHOUSE" mlflow-azure-emulator; \
    else \
        /opt/emulator/bin/pip install --no-cache-dir --disable-pip-version-check /src; \
    fi; \
    /opt/emulator/bin/emulator --help >/dev/null

# The runtime stage gets the venv only: no build context, no wheelhouse.
FROM ${BASE_IMAGE}
# A fixed non-root user, written directly: minimal bases may lack useradd.
RUN set -eu; \
    echo 'emulator:x:10001:10001:MLflow Azure emulator:/data:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'emulator:x:10001:' >> /etc/group; \
    mkdir -p /data; chown 10001:10001 /data; chmod 700 /data
COPY --from=build /opt/emulator /opt/emulator
ENV PATH=/opt/emulator/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8 \
    HOME=/data \
    EMULATOR_STATE_DIR=/data
USER 10001:10001
WORKDIR /data
EXPOSE 5001 5002
ENTRYPOINT ["emulator"]
CMD ["serve", "--role", "databricks", "--host", "0.0.0.0"]

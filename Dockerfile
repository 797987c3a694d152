# The emulator image: one image, two services (`emulator serve --role databricks|azureml`).
#
# Online (a registry and PyPI are reachable):   docker compose build
# Offline (no registry, no PyPI in containers):  emulator images build --offline
#   which passes BASE_IMAGE=<a debootstrap-made Debian image> and WHEELHOUSE=<wheels built on the host>.
#   From an installed package (no checkout) it also passes PROJECT_WHEEL=<a wheel of the installed one>.
# Works with the classic builder (Debian's docker.io has no buildx): no RUN --mount. Stages are split
# so a source change rebuilds a small layer, not the ~1 GB of pinned dependencies.
ARG BASE_IMAGE=python:3.11-slim

# 1. The pinned dependencies from pyproject.toml (and its [postgres] extra: MLflow's PostgreSQL driver,
#    as emulator/control/docker/images.py IMAGE_EXTRAS), in a venv. Cached until pyproject or wheels change.
FROM ${BASE_IMAGE} AS deps
# Empty: install from PyPI. Else a directory of wheels in the build context: pip install --no-index.
ARG WHEELHOUSE=
# Lets the offline builder prune these stages' untagged images afterwards.
LABEL org.mlflow-azure-emulator.stage=build
# (pyproject.toml is a stand-in so the COPY has a source when there is no wheelhouse.)
COPY ${WHEELHOUSE:-pyproject.toml} /wheels/
COPY pyproject.toml /src/pyproject.toml
RUN set -eu; \
    python3 -m venv /opt/emulator; \
    python3 -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['postgres']))" > /src/requirements.txt; \
    if [ -n "$WHEELHOUSE" ]; then set -- --no-index --find-links /wheels; else set --; fi; \
    /opt/emulator/bin/pip install --no-cache-dir --disable-pip-version-check "$@" -r /src/requirements.txt

# 2. A wheel of the project itself (offline: setuptools from the wheelhouse, no build isolation),
#    or the one given: from an installed package the context holds a wheel of it, not its sources.
FROM deps AS build
ARG WHEELHOUSE=
ARG PROJECT_WHEEL=
COPY . /src
RUN set -eu; \
    if [ -n "$PROJECT_WHEEL" ]; then mkdir -p /dist; cp "/src/$PROJECT_WHEEL" /dist/; exit 0; fi; \
    if [ -n "$WHEELHOUSE" ]; then \
        /opt/emulator/bin/pip install --no-cache-dir --disable-pip-version-check --no-index \
            --find-links /wheels "setuptools>=68" wheel; \
        set -- --no-index --find-links /wheels --no-build-isolation; \
    else set --; fi; \
    /opt/emulator/bin/pip wheel --no-cache-dir --disable-pip-version-check --no-deps "$@" -w /dist /src

# 3. The runtime: the dependency venv, plus the project wheel; no build context, no wheelhouse.
FROM ${BASE_IMAGE}
# A fixed non-root user, written directly: minimal bases may lack useradd.
RUN set -eu; \
    echo 'emulator:x:10001:10001:MLflow Azure emulator:/data:/usr/sbin/nologin' >> /etc/passwd; \
    echo 'emulator:x:10001:' >> /etc/group; \
    mkdir -p /data; chown 10001:10001 /data; chmod 700 /data
COPY --from=deps /opt/emulator /opt/emulator
COPY --from=build /dist /tmp/dist
RUN set -eu; \
    /opt/emulator/bin/pip install --no-cache-dir --disable-pip-version-check --no-index --no-deps /tmp/dist/*.whl; \
    rm -rf /tmp/dist; \
    /opt/emulator/bin/emulator --help >/dev/null
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

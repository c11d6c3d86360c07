# sandbox-exporter container image.
#
#   docker build -t sandbox-exporter .
#   docker run -p 9929:9929 -v ./my-config.yml:/etc/sandbox-exporter/config.yml:ro sandbox-exporter
#
# The image holds the exporter only: the emulator (sandbox_emulator/), which
# runs whatever commands it receives, is neither copied nor installed, so
# `--demo` here says it is missing. The compose demo runs the emulator from
# the checkout instead (see docker-compose.yml).
FROM python:3.12-slim-bookworm

# No .pyc files in a read-only image; logs straight to `docker logs`.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

# Only what the package build needs, so that editing tests or docs does not
# invalidate the install layer. pyproject.toml also lists sandbox_emulator;
# setuptools installs the packages it finds, and here it finds none.
WORKDIR /src
COPY pyproject.toml README.md ./
COPY sandbox_exporter ./sandbox_exporter
RUN pip install --no-cache-dir . \
    && rm -rf /src

# A starting configuration; mount your own over it.
COPY config/minimal.yml /etc/sandbox-exporter/config.yml

# Never run as root: the exporter needs no privilege.
# A numeric USER lets Kubernetes' runAsNonRoot verify it without /etc/passwd.
RUN useradd --system --uid 10001 --user-group --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin sandbox-exporter
USER 10001:10001
WORKDIR /

EXPOSE 9929

# slim images have no curl: ask Python. Assumes the default port and plain
# HTTP; with --web.config.file (TLS), override the healthcheck.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9929/-/healthy', timeout=4).status != 200)"]

ENTRYPOINT ["sandbox-exporter"]
CMD ["--config.file=/etc/sandbox-exporter/config.yml", "--web.listen-address=:9929"]

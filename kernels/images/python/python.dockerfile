# Services the proxy reaches (ai.backend.service-ports below); the runner starts each from
# its definition on the first connection (docs/agent.md). Jupyter Notebook 6 comes from
# kraken/base (python3-notebook). It has no token or password: it is reachable only through
# Kraken's authenticated proxy, and it answers only requests whose Host is a loopback name,
# as the client's local proxy sends them (THREAT_MODEL.md).
COPY jupyter.json /etc/kraken/services/jupyter.json
RUN chmod -R a+rX /etc/kraken

ENV KRAKEN_BATCH_DEFAULT_CLEAN="" \
    KRAKEN_BATCH_DEFAULT_BUILD="if [ -f Makefile ]; then make; fi" \
    KRAKEN_BATCH_DEFAULT_EXEC="python3 main.py"

LABEL ai.backend.kernelspec="1" \
      ai.backend.maxcores="4" \
      ai.backend.maxmem="2g" \
      ai.backend.timeout="0" \
      ai.backend.mode="query+pty" \
      ai.backend.features="query batch completion interrupt user-input pty uid-match" \
      ai.backend.envs.corecount="OPENBLAS_NUM_THREADS,OMP_NUM_THREADS" \
      ai.backend.base-distro="debian12" \
      ai.backend.runtime-type="python" \
      ai.backend.runtime-path="/usr/bin/python3" \
      kraken.batch.clean="" \
      kraken.batch.build="if [ -f Makefile ]; then make; fi" \
      kraken.batch.exec="python3 main.py" \
      kraken.runner.ports="2000,2001,2002" \
      ai.backend.service-ports="jupyter:http:8090"

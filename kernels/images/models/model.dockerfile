# The model programs (kernels/models, copied in with the runner under /opt/kraken). One
# job is one batch command, `python3 -m kernels.models.run <job directory>` (the label
# kraken.atlas.entry); the manager names the job directory, so there is no default.
ENV KRAKEN_BATCH_DEFAULT_CLEAN="" \
    KRAKEN_BATCH_DEFAULT_BUILD="" \
    KRAKEN_BATCH_DEFAULT_EXEC=""

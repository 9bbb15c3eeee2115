ENV PYTHONPATH=/opt/kraken \
    PYTHONUNBUFFERED=1 \
    HOME=/home/work \
    KRAKEN_RUNNER_WORKDIR=/home/work

USER work
WORKDIR /home/work
EXPOSE 2000 2001 2002
CMD ["python3", "-m", "kernels.runner"]

# Sessions run as the agent's jail.uid:jail.gid (default 2000000000, jail/policy.py
# KERNEL_UID), set numerically by the agent; the second `work` entry gives that uid a
# name and a home (whoami, git, the shell prompt). The uid-1000 entry stays while older
# agents (which start containers as the image user `work`) are still in use: the name
# resolves to the first entry. Appended by hand: useradd refuses a second `work`, and
# its lastlog/faillog records would make a 2-billion-uid sparse file.
RUN groupadd --gid 1000 work \
 && useradd --uid 1000 --gid 1000 --home-dir /home/work --create-home --shell /bin/bash work \
 && echo "work:x:2000000000:" >> /etc/group \
 && echo "work:x:2000000000:2000000000:Kraken session:/home/work:/bin/bash" >> /etc/passwd

# `python` as well as `python3` (users and batch recipes type either): the symlink that
# Debian's python-is-python3 package ships, made by hand because the build is offline.
RUN ln -s /usr/bin/python3 /usr/local/bin/python

COPY opt/kraken /opt/kraken
RUN python3 -m compileall -q /opt/kraken && chmod -R a+rX /opt/kraken

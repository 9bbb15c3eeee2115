"""Virtual folders (seed 004 §2.15): names and path confinement (``paths``), the files
on disk (``storage``, ``transfer``), the rows in PostgreSQL (``store``) and the rules
between them (``service``, ``invitations``, ``mounts``). See docs/vfolders.md."""

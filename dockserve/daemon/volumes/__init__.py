"""
Volumes: named and anonymous, of the C{local} driver, as first-class
objects (C{docker volume create/ls/inspect/rm/prune}) that containers
mount (L{dockserve.daemon.volumes.service}).
"""

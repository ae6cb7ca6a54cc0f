# -*- test-case-name: tests.integration.test_sdk_bugs -*-
"""
What the Docker SDK for Python's own integration tests expect of a daemon,
found failing by issue 9 (each compared with dockerd 20.10).
"""

from __future__ import annotations

from tests.integration.test_containers import _DaemonCase


class SdkTests(_DaemonCase):
    def test_prune_containers(self) -> None:
        """
        docker-py's test_prune_containers: the exited container is deleted
        with the space it wrote reclaimed (0 before); the running one stays.
        """
        api = self.sdk().api
        wrote = api.create_container("busybox", ["sh", "-c", "echo hello > /data.txt"])
        sleeps = api.create_container("busybox", ["sleep", "9999"])
        self.addCleanup(api.remove_container, sleeps, force=True)
        api.start(wrote)
        api.start(sleeps)
        api.wait(wrote)
        result = api.prune_containers()
        self.assertIn(wrote["Id"], result["ContainersDeleted"])
        self.assertNotIn(sleeps["Id"], result["ContainersDeleted"])
        self.assertGreater(result["SpaceReclaimed"], 0)

    def test_cp_archive_owner(self) -> None:
        """
        docker cp -a makes the files the container's user's (it had no
        effect: the tar's owner was kept).
        """
        import io  # noqa: PLC0415
        import tarfile  # noqa: PLC0415

        self.cleanup_container("owned")
        self.ok("create", "--name", "owned", "-u", "1234:567", "busybox", "true")
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as tar:
            info = tarfile.TarInfo("f")
            info.uid, info.gid, info.size = 42, 43, 1
            tar.addfile(info, io.BytesIO(b"x"))
        self.ok("cp", "-a", "-", "owned:/", stdin=out.getvalue())
        got = self.docker("cp", "owned:/f", "-").stdout
        with tarfile.open(fileobj=io.BytesIO(got)) as tar:
            member = tar.getmember("f")
        self.assertEqual((member.uid, member.gid), (1234, 567))
        self.ok("cp", "-", "owned:/", stdin=out.getvalue())
        got = self.docker("cp", "owned:/f", "-").stdout
        with tarfile.open(fileobj=io.BytesIO(got)) as tar:
            member = tar.getmember("f")
        self.assertEqual((member.uid, member.gid), (42, 43))

    def test_attach_logs_of_exited(self) -> None:
        """
        attach(stream=False, logs=True) of an exited container returns its
        output, as dockerd's (it returned b'': the replay came in the same
        read as the response head, which the SDK reads through a buffer).
        """
        client = self.sdk()
        container = client.containers.run(
            "busybox", ["sh", "-c", "echo hello; echo err >&2"], detach=True
        )
        self.addCleanup(container.remove, force=True)
        container.wait()
        for _ in range(3):
            got = container.attach(stdout=True, stderr=True, stream=False, logs=True)
            self.assertEqual(got, b"hello\nerr\n")

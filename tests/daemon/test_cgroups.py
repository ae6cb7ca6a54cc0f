"""Tests for L{dockserve.daemon.cgroups}: stats from a fake cgroup v1 tree."""

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from dockserve.daemon import cgroups

GROUP = "dockserve/abc"


class StatsTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.root = Path(self.mktemp())

    def write(self, controller: str, name: str, text: str) -> None:
        directory = self.root / controller / GROUP
        directory.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text)

    def fill(self, cpu_controller: str = "cpuacct") -> None:
        self.write(cpu_controller, "cpuacct.usage", "123456789\n")
        self.write(cpu_controller, "cpuacct.usage_percpu", "100 200 \n")
        self.write(cpu_controller, "cpuacct.stat", "user 30\nsystem 5\n")
        self.write(
            "cpu", "cpu.stat", "nr_periods 4\nnr_throttled 1\nthrottled_time 9\n"
        )
        self.write("memory", "memory.usage_in_bytes", "4096\n")
        self.write("memory", "memory.max_usage_in_bytes", "8192\n")
        self.write("memory", "memory.failcnt", "2\n")
        self.write("memory", "memory.limit_in_bytes", "1048576\n")
        self.write("memory", "memory.stat", "cache 10\nrss 20\nbad line here\n")
        self.write("pids", "pids.current", "3\n")
        self.write("pids", "pids.max", "64\n")
        self.write(
            "blkio",
            "blkio.throttle.io_service_bytes",
            "8:0 Read 512\n8:0 Write 1024\nTotal 1536\n",
        )

    def test_counters(self) -> None:
        """Every counter lands where the stats body has it."""
        self.fill()
        result = cgroups.stats(GROUP, root=self.root)
        usage = result["cpu_stats"]["cpu_usage"]
        self.assertEqual(usage["total_usage"], 123456789)
        self.assertEqual(usage["percpu_usage"], [100, 200])
        # Ticks at 100 Hz become nanoseconds.
        self.assertEqual(usage["usage_in_usermode"], 300_000_000)
        self.assertEqual(usage["usage_in_kernelmode"], 50_000_000)
        self.assertEqual(
            result["cpu_stats"]["throttling_data"],
            {"periods": 4, "throttled_periods": 1, "throttled_time": 9},
        )
        memory = result["memory_stats"]
        self.assertEqual(
            (memory["usage"], memory["max_usage"], memory["failcnt"], memory["limit"]),
            (4096, 8192, 2, 1048576),
        )
        self.assertEqual(memory["stats"], {"cache": 10, "rss": 20})
        self.assertEqual(result["pids_stats"], {"current": 3, "limit": 64})
        self.assertEqual(
            result["blkio_stats"]["io_service_bytes_recursive"],
            [
                {"major": 8, "minor": 0, "op": "Read", "value": 512},
                {"major": 8, "minor": 0, "op": "Write", "value": 1024},
            ],
        )

    def test_combined_cpu_controller(self) -> None:
        """A machine that mounts cpu,cpuacct together is read there."""
        self.fill(cpu_controller="cpu,cpuacct")
        result = cgroups.stats(GROUP, root=self.root)
        self.assertEqual(result["cpu_stats"]["cpu_usage"]["total_usage"], 123456789)

    def test_no_limit_is_host_memory(self) -> None:
        """An unlimited group (a huge number) shows the host's memory, as dockerd."""
        self.fill()
        self.write("memory", "memory.limit_in_bytes", "9223372036854771712\n")
        self.write("pids", "pids.max", "max\n")
        result = cgroups.stats(GROUP, root=self.root)
        total = cgroups._meminfo_total()
        self.assertTrue(total > 0)
        self.assertEqual(result["memory_stats"]["limit"], total)
        self.assertEqual(result["pids_stats"], {"current": 3})

    def test_missing_group(self) -> None:
        """A group that is gone (the container just ended) reads as zeros."""
        result = cgroups.stats("gone", root=self.root)
        self.assertEqual(result["cpu_stats"]["cpu_usage"]["total_usage"], 0)
        self.assertEqual(result["cpu_stats"]["cpu_usage"]["percpu_usage"], [])
        self.assertEqual(result["memory_stats"]["usage"], 0)
        self.assertEqual(result["memory_stats"]["stats"], {})
        self.assertEqual(result["pids_stats"], {"current": 0})
        self.assertIsNone(result["blkio_stats"]["io_service_bytes_recursive"])

"""The container image, built and run for real without a Docker engine.

docker/build.sh builds docker/Dockerfile with buildah (making the debian:bookworm base image locally
when it is missing); the test then runs paymux-sandbox and paymux from the image with `buildah run`
(chroot isolation: the host's network, so both listen on free 127.0.0.1 ports), as the image's
non-root user, with the configuration mounted at /etc/paymux/paymux.yaml and a host folder as the
SQLite data volume. It waits for /healthz (also through the image's own health check), takes and
pays a sandbox payment through the container, and ends paymux with SIGTERM expecting a clean drain.

    cd tests/image && PAYMUX_SOURCE_DIR=../.. python3 -m unittest -v test_image

Needs root (buildah, debootstrap); otherwise it exits with status 77, which CTest counts as skipped.
PAYMUX_IMAGE names the image (default localhost/paymux:latest); PAYMUX_IMAGE_BUILD=0 runs an image
already built instead of running docker/build.sh first.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import harness  # noqa: E402

SOURCE_DIR = os.path.abspath(os.environ.get("PAYMUX_SOURCE_DIR", os.path.join(HERE, "..", "..")))
IMAGE = os.environ.get("PAYMUX_IMAGE", "localhost/paymux:latest")
BUILDAH = ["buildah", "--storage-driver", os.environ.get("BUILDAH_STORAGE_DRIVER", "vfs")]
RUN = ["run", "--isolation", "chroot"]
SIZE_TARGET = 120 * 1000 * 1000   # bytes (buildah reports MB as 10^6)
USER = "paymux"


def buildah(*args, check=True, timeout=300):
    r = subprocess.run(BUILDAH + list(args), capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"buildah {' '.join(args)} failed ({r.returncode}): {r.stderr.strip()}")
    return r


def image_size(image):
    """The image's size as buildah reports it ("97.3 MB": decimal units), in bytes."""
    text = json.loads(buildah("images", "--json", image).stdout)[0]["size"]
    number, unit = text.split()
    return float(number) * {"B": 1, "kB": 1e3, "MB": 1e6, "GB": 1e9}[unit]


def descendants(pid):
    """Every process below pid (the host sees the container's processes: chroot isolation)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def process_named(parent, name):
    for pid in descendants(parent):
        try:
            with open(f"/proc/{pid}/comm") as f:
                if f.read().strip() == name:
                    return pid
        except OSError:
            pass
    return None


def uids_of(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Uid:"):
                return [int(x) for x in line.split()[1:]]
    return []


class ContainerStack(harness.Stack):
    """harness.Stack with both programs run from the image, each in its own working container."""

    # The data folder is bound at a path of its own, not over the image's VOLUME /var/lib/paymux:
    # under `buildah run --isolation chroot` the image's anonymous volume and a bind mount on the
    # same path are set up in no fixed order, and the anonymous one often wins (a container engine
    # gives the bind precedence). storage.url points paymux at it.
    DATA = "/srv/paymux-data"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.data_dir = os.path.join(self.dir, "data")
        os.makedirs(self.data_dir)
        self.db = f"{self.DATA}/paymux.db"          # as paymux sees it, inside the container
        self.storage_url = f"sqlite://{self.db}"
        self.containers = {}
        self.paymux_pid = None

    def container(self, name):
        if name not in self.containers:
            self.containers[name] = buildah("from", "--pull=never", IMAGE).stdout.strip()
        return self.containers[name]

    def user_ids(self):
        """The image user's uid and gid, asked inside the image (a container of its own: the others
        are busy running the programs)."""
        if not hasattr(self, "_ids"):
            probe = self.container("probe")
            self._ids = tuple(int(buildah(*RUN, "--user", USER, probe, "--", "id", flag).stdout.strip())
                              for flag in ("-u", "-g"))
        return self._ids

    def probe(self, *command, env=None):
        """Runs a command in the image (as its user) while paymux runs: the health check."""
        args = [a for k, v in (env or {}).items() for a in ("--env", f"{k}={v}")]
        return buildah(*RUN, *args, self.container("probe"), "--", *command, check=False)

    def launch(self, program, config_text, config_path, log_name, run_args, health_port, health_path):
        """Starts program from the image with its configuration mounted read-only at config_path,
        then waits until health_path answers 200 on health_port."""
        host_config = os.path.join(self.dir, os.path.basename(config_path))
        with open(host_config, "w") as f:
            f.write(config_text)
        os.chmod(host_config, 0o644)
        with open(os.path.join(self.dir, log_name), "ab") as log:
            proc = subprocess.Popen(
                BUILDAH + RUN + run_args + ["-v", f"{host_config}:{config_path}:ro", self.container(program),
                                            "--", program, "--config", config_path],
                stdout=log, stderr=subprocess.STDOUT)
        harness.wait_for(lambda: self._alive(proc, program) and
                         harness.request(health_port, "GET", health_path, timeout=1).status == 200,
                         timeout=60, what=f"{program} health")
        return proc

    def start_sandbox(self):
        self.sandbox = self.launch("paymux-sandbox", self.sandbox_config(), "/etc/paymux/sandbox-gateways.yaml",
                                   "sandbox.log", ["--user", USER], self.sandbox_port, "/_sandbox/healthz")

    def start_paymux(self):
        uid, gid = self.user_ids()
        os.chown(self.data_dir, uid, gid)
        os.chmod(self.data_dir, 0o750)
        self.paymux_log_path = os.path.join(self.dir, "paymux.log")
        env = [a for k, v in self.paymux_env.items() for a in ("--env", f"{k}={v}")]
        # No --user: the image's USER applies, as it would under a container engine.
        self.paymux = self.launch("paymux", self.paymux_config(), "/etc/paymux/paymux.yaml", "paymux.log",
                                  env + ["-v", f"{self.data_dir}:{self.DATA}"], self.port, "/healthz")
        self.paymux_pid = harness.wait_for(lambda: process_named(self.paymux.pid, "paymux"),
                                           what="the paymux process")

    @staticmethod
    def terminate(proc, name, sig, timeout):
        """Sends sig to the program itself (as a container engine's stop does, not to buildah) and
        returns buildah run's exit status, which is the program's."""
        pid = process_named(proc.pid, name)
        if pid and proc.poll() is None:
            os.kill(pid, sig)
        elif sig == signal.SIGKILL and proc.poll() is None:
            proc.kill()                     # still starting: no program yet, stop buildah itself
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            if sig != signal.SIGKILL:
                ContainerStack.terminate(proc, name, signal.SIGKILL, 10)
            raise AssertionError(f"{name} did not exit within {timeout} s of signal {sig}")

    def kill_all(self):
        for proc, name in ((self.paymux, "paymux"), (self.sandbox, "paymux-sandbox")):
            if proc:
                self.terminate(proc, name, signal.SIGKILL, 10)
        self.paymux = self.sandbox = None

    def stop_paymux(self, sig=signal.SIGTERM, expect_clean=True):
        proc, self.paymux = self.paymux, None
        return self.terminate(proc, "paymux", sig, 30) if proc else None

    def stop(self):
        try:
            self.stop_paymux()
            proc, self.sandbox = self.sandbox, None
            if proc:
                self.terminate(proc, "paymux-sandbox", signal.SIGTERM, 15)
        finally:
            for ctr in self.containers.values():
                buildah("rm", ctr, check=False)
            self.containers = {}


class ImageTest(harness.StackTestCase):
    """Both programs started from the image once for the class; the tests run in order: image
    metadata, user and health, a paid payment, and last the drain. The stack's files are kept
    and the logs' ends printed when a test fails (harness.StackTestCase)."""

    @classmethod
    def setUpClass(cls):
        if os.geteuid() != 0:
            print("skipped: building and running the image needs root (buildah, debootstrap)")
            sys.exit(77)
        if os.environ.get("PAYMUX_IMAGE_BUILD", "1") != "0":
            cls.build_image()
        cls._failed = False
        cls.stack = ContainerStack(shutdown_grace_ms=5000)
        try:
            cls.stack.start()
        except BaseException:
            cls._failed = True
            cls.tearDownClass()
            raise

    @classmethod
    def build_image(cls):
        started = time.monotonic()
        # The build's output goes to a file; its end is shown when the build fails.
        with tempfile.TemporaryFile() as log:
            build = subprocess.run(["bash", os.path.join(SOURCE_DIR, "docker", "build.sh")], cwd=SOURCE_DIR,
                                   env=dict(os.environ, IMAGE=IMAGE), stdout=log, stderr=subprocess.STDOUT,
                                   timeout=3600)
            log.seek(0)
            lines = log.read().decode("utf-8", "replace").splitlines()
        if build.returncode != 0:
            raise AssertionError(f"docker/build.sh failed ({build.returncode}):\n" + "\n".join(lines[-60:]))
        made_base = any(line.startswith("stored ") for line in lines)
        print(f"\nimage built in {time.monotonic() - started:.0f} s"
              f"{' (base image made by debootstrap)' if made_base else ''}: {lines[-1] if lines else ''}", flush=True)

    def test_1_image_config_and_size(self):
        info = json.loads(buildah("inspect", "--type", "image", IMAGE).stdout)
        cfg = info["Docker"]["config"]
        self.assertEqual(cfg["User"], "paymux:paymux")
        self.assertIn("8080/tcp", cfg["ExposedPorts"])
        self.assertIn("/var/lib/paymux", cfg["Volumes"])
        self.assertEqual(cfg["StopSignal"], "SIGTERM")
        self.assertEqual(cfg["Entrypoint"], ["paymux"])
        self.assertEqual(cfg["Cmd"], ["--config", "/etc/paymux/paymux.yaml"])
        self.assertEqual(cfg["Healthcheck"]["Test"], ["CMD", "paymux-healthcheck"])
        size = image_size(IMAGE)
        print(f"\nruntime image {IMAGE}: {size / 1e6:.1f} MB, {len(info['Docker']['rootfs']['diff_ids'])} layer(s)",
              flush=True)
        self.assertLess(size, SIZE_TARGET)
        # The configuration built into the image (the sandbox quick start) is complete as it stands.
        check = buildah(*RUN, self.stack.container("probe"), "--", "paymux", "--check-config", "--config",
                        "/etc/paymux/paymux.yaml", check=False)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_2_runs_as_non_root_and_healthy(self):
        stack = self.stack
        uid, _ = stack.user_ids()
        self.assertNotEqual(uid, 0)
        self.assertEqual(uids_of(stack.paymux_pid), [uid] * 4, "paymux must run as the image's user")
        sandbox_pid = process_named(stack.sandbox.pid, "paymux-sandbox")
        self.assertEqual(uids_of(sandbox_pid), [uid] * 4)
        # The image's HEALTHCHECK command, run in the image against the live paymux.
        ok = stack.probe("paymux-healthcheck", env={"PAYMUX_HEALTH_PORT": stack.port})
        self.assertEqual(ok.returncode, 0, ok.stderr)
        bad = stack.probe("paymux-healthcheck", env={"PAYMUX_HEALTH_PORT": harness.free_port()})
        self.assertNotEqual(bad.returncode, 0, "the health check must fail with nothing listening")
        self.assertEqual(stack.api("GET", "/readyz", key=None).status, 200)

    def test_3_sandbox_payment_paid(self):
        stack = self.stack
        self.assertIsNotNone(stack.paymux, "paymux is not running")
        r = stack.create_payment(amount=2599)
        self.assertEqual(r.status, 201, r)
        created = r.json()
        self.assertEqual(created["status"], "requires_action")
        page = stack.pay_on_page(created)
        self.assertEqual(page.status, 200, page)
        paid = stack.wait_status(created["id"], "succeeded", timeout=30)
        self.assertEqual(paid["amount"], 2599)
        # The store is on the mounted data folder, written by the container's user.
        db = os.path.join(stack.data_dir, "paymux.db")
        self.assertTrue(os.path.exists(db))
        self.assertEqual(os.stat(db).st_uid, stack.user_ids()[0])

    def test_4_sigterm_drains(self):
        stack = self.stack
        self.assertIsNotNone(stack.paymux, "paymux is not running")
        rc = stack.stop_paymux(signal.SIGTERM)
        self.assertEqual(rc, 0, "paymux in the container must exit 0 after SIGTERM")
        log = stack.paymux_log_text()
        self.assertIn("received: draining", log)
        self.assertIn("paymux stopped", log)


if __name__ == "__main__":
    unittest.main()

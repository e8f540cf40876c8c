//! Holding a server process at one instruction: gdb attached to a PostgreSQL backend with a
//! breakpoint on a function, so a test can act while that backend is stopped exactly there and
//! let it go on afterwards (deterministic interleavings), or pausing it there briefly every
//! time it passes (stress runs that widen a rare window). The server is not changed.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How often a detach checks whether gdb has ended.
const POLL: Duration = Duration::from_millis(20);

/// gdb attached to one process, the process running until it reaches the breakpoint.
#[derive(Debug)]
pub struct Breakpoint {
    gdb: Child,
    commands: ChildStdin,
    output: mpsc::Receiver<String>,
    /// Everything gdb printed so far, for failure messages.
    transcript: Vec<String>,
    function: String,
    /// Whether the process is stopped at the breakpoint (gdb then reads commands).
    stopped: bool,
    released: bool,
}

impl Breakpoint {
    /// Attaches gdb to `pid`, puts a breakpoint on `function` (a symbol the binary exports) and
    /// lets the process run on. Panics, with gdb's output, when gdb cannot do so within
    /// `deadline`.
    pub fn set(pid: u32, function: &str, deadline: Duration) -> Breakpoint {
        Breakpoint::attach(pid, function, "", deadline)
    }

    /// Attaches gdb to `pid` and pauses the process for `pause` each time it reaches
    /// `function`, counting the pauses; it runs on between them.
    pub fn pause_each_time(
        pid: u32,
        function: &str,
        pause: Duration,
        deadline: Duration,
    ) -> Breakpoint {
        let seconds = pause.as_secs_f64();
        let on_hit = format!(
            "set $pauses = 0\npython import time\ncommands\nsilent\nset $pauses = $pauses + 1\n\
             python time.sleep({seconds})\ncontinue\nend\n"
        );
        Breakpoint::attach(pid, function, &on_hit, deadline)
    }

    /// How many times a [`Breakpoint::pause_each_time`] paused the process; ends gdb, which
    /// lets the process go on without it.
    pub fn release_counting(mut self, deadline: Duration) -> u64 {
        self.interrupt();
        self.stopped = true;
        self.send("printf \"pauses=%d\\n\", $pauses\n");
        let line = self.wait_for_line("pauses=", deadline);
        self.detach();
        line.rsplit('=')
            .next()
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0)
    }

    fn attach(pid: u32, function: &str, on_hit: &str, deadline: Duration) -> Breakpoint {
        let mut gdb = Command::new("gdb")
            .args(["-q", "-nx", "-p", &pid.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gdb is installed (Debian package gdb)");
        let commands = gdb.stdin.take().expect("gdb's stdin");
        let (lines, output) = mpsc::channel();
        for stream in [
            Box::new(gdb.stdout.take().expect("gdb's stdout")) as Box<dyn std::io::Read + Send>,
            Box::new(gdb.stderr.take().expect("gdb's stderr")),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if lines.send(line).is_err() {
                        return;
                    }
                }
            });
        }
        let mut breakpoint = Breakpoint {
            gdb,
            commands,
            output,
            transcript: Vec::new(),
            function: function.to_string(),
            stopped: false,
            released: false,
        };
        breakpoint.send(&format!(
            "set pagination off\nset confirm off\nbreak {function}\n{on_hit}\
             echo breakpoint-set\\n\n"
        ));
        breakpoint.wait_for_line("breakpoint-set", deadline);
        breakpoint.send("continue\n");
        breakpoint
    }

    /// Waits until the process stopped at the breakpoint.
    pub fn wait_until_reached(&mut self, deadline: Duration) {
        let marker = format!(" in {} ", self.function);
        self.wait_for_line(&marker, deadline);
        self.stopped = true;
    }

    /// Removes the breakpoint and lets the process go on without gdb.
    pub fn release(mut self) {
        self.detach();
    }

    fn detach(&mut self) {
        if self.released {
            return;
        }
        self.released = true;
        if !self.stopped {
            self.interrupt();
        }
        // The breakpoint must go before gdb does: a process left with it would trap and die.
        let _ = self
            .commands
            .write_all(b"delete\ndetach\nquit\n")
            .and_then(|()| self.commands.flush());
        let give_up = std::time::Instant::now() + Duration::from_secs(10);
        while std::time::Instant::now() < give_up {
            if let Ok(Some(_)) = self.gdb.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = self.gdb.kill();
        let _ = self.gdb.wait();
    }

    /// gdb reads no command while the process runs: stop it first.
    fn interrupt(&mut self) {
        let _ = Command::new("kill")
            .args(["-INT", &self.gdb.id().to_string()])
            .status();
    }

    fn send(&mut self, commands: &str) {
        self.commands
            .write_all(commands.as_bytes())
            .and_then(|()| self.commands.flush())
            .expect("gdb takes commands");
    }

    fn wait_for_line(&mut self, needle: &str, deadline: Duration) -> String {
        let give_up = std::time::Instant::now() + deadline;
        loop {
            let left = give_up.saturating_duration_since(std::time::Instant::now());
            match self.output.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.transcript.push(line.clone());
                    if found {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "gdb did not print {needle:?} within {deadline:?}; it printed:\n{}",
                    self.transcript.join("\n")
                ),
            }
        }
    }
}

impl Drop for Breakpoint {
    /// A test that panics while the process is held must not leave it stopped.
    fn drop(&mut self) {
        self.detach();
    }
}

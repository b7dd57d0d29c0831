// How every browser test starts Chromium: Debian's, headless, with nothing reaching out.
export const LAUNCH = {
  executablePath: "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
};

/** Stops a `tocsin serve` child and waits for it to exit: on SIGTERM it writes a last snapshot
 * into its data directory, which must not be removed under it. */
export async function stopServer(server) {
  if (!server || server.exitCode !== null || server.signalCode !== null) return;
  const exited = new Promise((resolve) => server.once("exit", resolve));
  server.kill("SIGTERM");
  await exited;
}

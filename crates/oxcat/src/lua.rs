//! `--lua-exec FILE`: like `-e`, but the program is a Lua script run by an
//! interpreter built into oxcat (Lua 5.4), as ncat embeds one. The script
//! runs in a process of its own whose standard input and output are pipes
//! that oxcat relays to and from the connection, as for `-e` (see `exec`),
//! with the same `NCAT_*` variables: `io.read` reads what the peer sent,
//! `io.write` sends to it, `os.getenv("NCAT_REMOTE_ADDR")` says who it is.

use std::path::Path;

use mlua::Lua;

use crate::error::Failure;

/// The first argument that makes this binary run a script (not a user flag:
/// only `exec` uses it, in the process it starts).
pub const RUN_FLAG: &str = "--internal-lua-run";

fn load(path: &Path) -> Result<(Lua, mlua::Function), String> {
    let source = std::fs::read(path).map_err(|e| {
        format!(
            "cannot open {}: {}",
            path.display(),
            crate::error::describe(&e)
        )
    })?;
    let lua = Lua::new();
    let chunk = lua
        .load(source)
        .set_name(format!("@{}", path.display()))
        .into_function()
        .map_err(|e| e.to_string())?;
    Ok((lua, chunk))
}

/// Loads (and compiles) the script at startup, as ncat does.
pub fn check(path: &Path) -> Result<(), Failure> {
    load(path)
        .map(|_| ())
        .map_err(|e| Failure::usage(format!("Error loading the Lua script: {e}")))
}

/// The script's process: runs it; 0 when it finishes, 1 when it fails.
pub fn run(path: Option<&Path>) -> i32 {
    let Some(path) = path else {
        crate::msg::say("Error loading the Lua script: no script given");
        return 2;
    };
    let (_lua, chunk) = match load(path) {
        Ok(l) => l,
        Err(e) => {
            crate::msg::say(&format!("Error loading the Lua script: {e}"));
            return 2;
        }
    };
    match chunk.call::<()>(()) {
        Ok(()) => 0,
        Err(e) => {
            crate::msg::say(&format!("Error running the Lua script: {e}"));
            1
        }
    }
}

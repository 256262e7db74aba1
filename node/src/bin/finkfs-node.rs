//! `finkfs-node`: one finkfs storage node. Everything but argument parsing
//! lives in `finkfs_node::daemon`.

fn main() -> std::process::ExitCode {
    finkfs_node::daemon::main()
}

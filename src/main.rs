//! The `prom-metrics-adapter` binary: everything lives in the library.

fn main() {
    let code = prom_metrics_adapter::cli::main_with_args(std::env::args().collect());
    std::process::exit(code);
}

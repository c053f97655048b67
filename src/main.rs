//! The `prom-metrics-adapter` binary: everything lives in the library.

fn main() {
    prom_metrics_adapter::server::memory::limit_arenas();
    let code = prom_metrics_adapter::cli::main_with_args(std::env::args().collect());
    std::process::exit(code);
}

fn main() {
    std::process::exit(behavry::cli::main());
}

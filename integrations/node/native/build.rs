// The linker settings a Node.js addon needs on each platform (on macOS,
// leaving Node's symbols to be found at load time).
fn main() {
    napi_build::setup();
}

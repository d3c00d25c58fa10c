"""The helpers generated modules start with, as real modules: :func:`lstm_verify.codegen.prelude`
copies each file's source after its marker line into every generated module of its backend."""

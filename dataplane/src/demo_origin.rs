//! A small HTTP/1.1 origin server for `portcullis demo` and end-to-end tests (in progress).

"""What a node scores with: the feature front end, int8 quantization, the model artifact and its
signed manifest, and the int8 engine with its compiled kernels. Pure and I/O-free apart from reading
artifacts; imports only `edgefleet.protocol` and `edgefleet.errors` from the rest of the package."""

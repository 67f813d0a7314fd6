//! Output encodings shared by commands (NumPy `.npy`, tables).

use std::io::Write;

/// Writes a float32 matrix in NumPy's `.npy` v1.0 format.
pub fn write_npy(out: &mut impl Write, rows: &[&[f32]], dim: usize) -> std::io::Result<()> {
    let mut header = format!(
        "{{'descr': '<f4', 'fortran_order': False, 'shape': ({}, {}), }}",
        rows.len(),
        dim
    );
    // Magic (6) + version (2) + header length (2) + header, padded to 64 bytes, ending in \n.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    out.write_all(b"\x93NUMPY\x01\x00")?;
    out.write_all(&(header.len() as u16).to_le_bytes())?;
    out.write_all(header.as_bytes())?;
    for row in rows {
        for v in *row {
            out.write_all(&v.to_le_bytes())?;
        }
    }
    Ok(())
}

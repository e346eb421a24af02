//! QR codes as PNG images, for the lookup link on emails and receipt pages.

/// A QR code of `text` as a PNG image (black on white, quiet zone of 4 modules).
pub fn qr_png(text: &str) -> Vec<u8> {
    let code = match qrcode::QrCode::new(text.as_bytes()) {
        Ok(c) => c,
        Err(_) => return Vec::new(),
    };
    let width = code.width();
    let colors = code.to_colors();
    let scale = 6usize;
    let quiet = 4usize;
    let size = (width + 2 * quiet) * scale;
    let mut pixels = vec![255u8; size * size];
    for y in 0..width {
        for x in 0..width {
            if colors[y * width + x] == qrcode::Color::Dark {
                for dy in 0..scale {
                    let row = ((y + quiet) * scale + dy) * size;
                    for dx in 0..scale {
                        pixels[row + (x + quiet) * scale + dx] = 0;
                    }
                }
            }
        }
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, size as u32, size as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        if let Ok(mut w) = enc.write_header() {
            let _ = w.write_image_data(&pixels);
        }
    }
    out
}

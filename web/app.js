// The pages' behaviour, no build step: each page is <body data-page="...">, and every call goes to
// this app's /api, which forwards to tsserve. Uploads are checked here first (type, size) so a
// mistake gets a clear message before anything is sent.
// tsserve's default max_request_size until /api/health says what the app was started with.
let maxUpload = 6553500;
const IMAGE_TYPES = ['image/png', 'image/jpeg'];
const $ = (id) => document.getElementById(id);

function say(text, isError = false) {
  const status = $('status');
  if (!status) return;
  status.textContent = text;
  status.classList.toggle('error', isError);
}

/** The file of an input, or a message saying what is wrong with it. */
function checkedFile(input, what) {
  const file = input.files[0];
  if (!file) throw new Error(`Choose ${what}.`);
  if (!IMAGE_TYPES.includes(file.type)) throw new Error(`${file.name} is not a PNG or JPEG image.`);
  if (file.size > maxUpload) throw new Error(`${file.name} is ${megabytes(file.size)}; the limit is ${megabytes(maxUpload)}.`);
  return file;
}

function megabytes(bytes) {
  return `${(bytes / 1048576).toFixed(1)} MB`;
}

/** The server's own words for a failed request: TorchServe's {code, type, message}, or the app's. */
async function failure(res) {
  const text = await res.text();
  try {
    const body = JSON.parse(text);
    if (res.status === 503) return `The model server is busy or has no worker for this model (${body.message}). Try again shortly.`;
    return body.message ?? text;
  } catch {
    return `${res.status} ${text}`.trim();
  }
}

async function checkHealth() {
  const banner = $('health');
  try {
    const res = await fetch('/api/health');
    const health = await res.json();
    if (health.maxUpload) {
      maxUpload = health.maxUpload;
      for (const limit of document.querySelectorAll('.upload-limit')) limit.textContent = megabytes(maxUpload);
    }
    const ok = health.inference.ok && health.management.ok;
    banner.textContent = ok ? 'model server healthy' : health.inference.status === null ? 'model server unreachable' : `model server unhealthy (${health.inference.status})`;
    banner.className = ok ? 'ok' : 'bad';
  } catch {
    banner.textContent = 'web app unreachable';
    banner.className = 'bad';
  }
}

function preview(input, img) {
  input.addEventListener('change', () => {
    if (input.files[0]) img.src = URL.createObjectURL(input.files[0]);
  });
}

/** Runs `work` on submit with the button disabled; any error becomes the status line. */
function onSubmit(form, button, work) {
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    button.disabled = true;
    try {
      await work();
    } catch (err) {
      say(err.message, true);
    } finally {
      button.disabled = false;
    }
  });
}

/**
 * An explanation (a C x H x W list; the channels agree) drawn over the image: red where hiding
 * a part lowers the class's score, blue where it raises it, stronger the more it does.
 */
function drawHeat(canvas, map) {
  const rows = map[0];
  const height = rows.length;
  const width = rows[0].length;
  const peak = Math.max(1e-12, ...rows.flat().map(Math.abs));
  const cells = document.createElement('canvas');
  cells.width = width;
  cells.height = height;
  const image = cells.getContext('2d').createImageData(width, height);
  rows.flat().forEach((v, i) => {
    const strength = Math.abs(v) / peak;
    image.data.set(v >= 0 ? [220, 30, 30, 200 * strength] : [30, 60, 220, 200 * strength], i * 4);
  });
  cells.getContext('2d').putImageData(image, 0, 0);
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(cells, 0, 0, canvas.width, canvas.height);
  // Over the image as shown (a classifier that crops explains its centre crop only).
  const shown = $('preview');
  canvas.style.width = `${shown.clientWidth}px`;
  canvas.style.height = `${shown.clientHeight}px`;
  canvas.dataset.cells = `${width}x${height}`;
  canvas.hidden = false;
}

const pages = {
  nst() {
    preview($('content'), $('content-preview'));
    onSubmit($('nst-form'), $('transfer'), async () => {
      const form = new FormData();
      form.append('content', checkedFile($('content'), 'a content image'));
      if ($('ready').value) form.append('style', $('ready').value);
      else form.append('style', checkedFile($('style'), 'a style image'));
      const steps = Number($('steps').value);
      form.append('steps', String(steps));
      form.append('size', $('size').value);
      form.append('stream', 'true');
      const progress = $('progress');
      progress.hidden = false;
      progress.value = 0;
      say('Sending...');
      const res = await fetch('/api/predict/nst', { method: 'POST', body: form });
      if (!res.ok) throw new Error(await failure(res));
      // Progress arrives as JSON lines while the model works; the last line carries the image.
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += value;
        const lines = buffered.split('\n');
        buffered = lines.pop();
        for (const line of lines.filter(Boolean)) {
          const update = JSON.parse(line);
          if (update.code) throw new Error(update.message);
          progress.value = update.step / steps;
          say(`Step ${update.step} of ${steps}: style loss ${update.style_loss.toFixed(2)}`);
          if (update.done) {
            const src = `data:image/png;base64,${update.image}`;
            $('result').src = src;
            $('download').href = src;
            $('download').hidden = false;
            say(`Done: ${update.step} steps, style loss ${update.style_loss.toFixed(2)}.`);
          }
        }
      }
    });
  },

  classify() {
    preview($('image'), $('preview'));
    onSubmit($('classify-form'), $('classify'), async () => {
      const file = checkedFile($('image'), 'an image');
      say('Classifying...');
      const res = await fetch(`/api/predict/${encodeURIComponent($('model').value)}`, { method: 'POST', body: file, headers: { 'content-type': file.type } });
      if (!res.ok) throw new Error(await failure(res));
      const answer = await res.json();
      // A handler answers {label: probability} (top 5) or one label (the MNIST example).
      const classes = typeof answer === 'object' && answer !== null ? Object.entries(answer) : [[String(answer), 1]];
      classes.sort((a, b) => b[1] - a[1]);
      $('bars').replaceChildren(...classes.slice(0, 5).map(([label, p]) => {
        const li = document.createElement('li');
        li.innerHTML = '<strong class="label"></strong><div class="bar"></div><span></span>';
        li.querySelector('.label').textContent = label;
        li.querySelector('.bar').style.width = `${Math.max(1, p * 100)}%`;
        li.querySelector('span').textContent = `${(p * 100).toFixed(1)}%`;
        return li;
      }));
      say(`Most probable: ${classes[0][0]}`);
      $('heat').hidden = true;
      $('target').value = classes[0][0];
      $('explain-form').hidden = false;
    });
    onSubmit($('explain-form'), $('explain'), async () => {
      const form = new FormData();
      form.append('data', checkedFile($('image'), 'an image'));
      form.append('target', $('target').value);
      say('Explaining...');
      const res = await fetch(`/api/explain/${encodeURIComponent($('model').value)}`, { method: 'POST', body: form });
      if (!res.ok) throw new Error(await failure(res));
      drawHeat($('heat'), await res.json());
      say(`Explained class ${$('target').value}: red counts for it, blue against.`);
    });
  },

  ocr() {
    onSubmit($('ocr-form'), $('read'), async () => {
      const file = checkedFile($('image'), 'an image');
      say('Reading...');
      const res = await fetch('/api/predict/ocr', { method: 'POST', body: file, headers: { 'content-type': file.type } });
      if (!res.ok) throw new Error(await failure(res));
      const { lines } = await res.json();
      const image = await createImageBitmap(file);
      const canvas = $('canvas');
      canvas.width = image.width;
      canvas.height = image.height;
      const ctx = canvas.getContext('2d');
      ctx.drawImage(image, 0, 0);
      ctx.strokeStyle = '#e63946';
      ctx.lineWidth = 2;
      for (const line of lines) {
        ctx.beginPath();
        line.box.forEach(([x, y], i) => (i === 0 ? ctx.moveTo(x, y) : ctx.lineTo(x, y)));
        ctx.closePath();
        ctx.stroke();
      }
      $('lines').replaceChildren(...lines.map((l) => {
        const li = document.createElement('li');
        li.textContent = `${l.text} (${(l.confidence * 100).toFixed(1)}%)`;
        return li;
      }));
      say(lines.length ? `${lines.length} line(s) read.` : 'No text found.');
    });
  },

  models() {
    const refresh = async () => {
      try {
        const res = await fetch('/api/models');
        if (!res.ok) throw new Error(await failure(res));
        const { models, requests } = await res.json();
        $('models').replaceChildren(...models.map((m) => {
          const tr = document.createElement('tr');
          const states = m.workers.map((w) => `<span class="${w.status}">${w.status}</span>`).join(' ') || 'none';
          const cells = [m.modelName, m.modelVersion, `${m.minWorkers}-${m.maxWorkers}`, null, m.batchSize, m.jobQueueStatus?.pendingRequests ?? 0, requests[m.modelName] ?? 0];
          for (const value of cells) {
            const td = document.createElement('td');
            if (value === null) td.innerHTML = states;
            else td.textContent = String(value);
            tr.append(td);
          }
          return tr;
        }));
        say(`${models.length} model version(s).`);
      } catch (err) {
        say(err.message, true);
      }
    };
    void refresh();
    setInterval(refresh, 2000);
  },
};

void checkHealth();
setInterval(checkHealth, 5000);
pages[document.body.dataset.page]?.();

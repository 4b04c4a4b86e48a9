// Copy buttons: <button data-copy-target="element-id"> copies that element's text.
// Delegated from the document so it also works for content rendered later by the circuit.
document.addEventListener("click", async (event) => {
    const button = event.target instanceof Element ? event.target.closest("[data-copy-target]") : null;
    if (!button) return;
    const source = document.getElementById(button.getAttribute("data-copy-target"));
    if (!source) return;
    const label = button.textContent;
    try {
        await navigator.clipboard.writeText(source.textContent.trim());
        button.textContent = "Copied";
    } catch {
        button.textContent = "Copy failed: select the text";
    }
    setTimeout(() => { button.textContent = label; }, 2000);
});

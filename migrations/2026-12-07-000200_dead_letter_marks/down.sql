DROP TABLE dead_letter_marks;
